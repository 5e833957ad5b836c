"""Datasette (https://datasette.io) serving Port Alder's open data on restaurant inspections."""
