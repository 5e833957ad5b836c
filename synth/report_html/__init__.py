"""The pieces of `synth stats --html`: what the page shows (data), its plots
(charts), the screenshots made small (thumbs) and the page itself (page.html,
page.js, page.css). `synth.report` puts them together."""
