// The review page: accept/reject and save-and-next by keyboard, and the
// "override the judge" part of the form when accepting what the judge failed.
"use strict";

(() => {
  const form = document.getElementById("review-form");
  if (!form) return;
  const judgeFailed = form.dataset.judgeFailed === "1";
  const override = document.getElementById("override");
  const box = document.getElementById("override-box");
  const reason = document.getElementById("override_reason");

  function chosen() {
    const r = form.querySelector('input[name="verdict"]:checked');
    return r ? r.value : null;
  }

  // Accepting a trajectory the judge failed is an explicit override, with a reason.
  function sync() {
    if (!judgeFailed || !override) return;
    const accepting = chosen() === "accept";
    override.hidden = !accepting;
    box.required = accepting;
    reason.required = accepting;
  }
  for (const r of form.querySelectorAll('input[name="verdict"]')) r.addEventListener("change", sync);
  sync();

  function choose(value) {
    form.querySelector(`input[name="verdict"][value="${value}"]`).checked = true;
    sync();
    if (value === "accept" && judgeFailed) reason.focus();
  }

  function saveAndNext() {
    const button = document.getElementById("save-next");
    if (form.reportValidity()) form.requestSubmit(button);
  }

  document.addEventListener("keydown", (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter") { ev.preventDefault(); saveAndNext(); return; }
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName)
      && !["radio", "checkbox"].includes(document.activeElement.type);
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const k = ev.key.toLowerCase();
    if (k === "a") { ev.preventDefault(); choose("accept"); }
    else if (k === "r") { ev.preventDefault(); choose("reject"); }
    else if (k === "f") { ev.preventDefault(); document.getElementById("step-final").scrollIntoView(); }
  });
})();
