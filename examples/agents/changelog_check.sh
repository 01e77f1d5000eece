# A verifier that files a report: one warning, one note.
cat <<'JSON'
{"verification_report": {"findings": [
  {"id": "CHG-1", "severity": "warning", "category": "changelog",
   "description": "the 1.4.0 entry does not mention the removed /v1/auth endpoint",
   "recommendation": "add a Removed section"},
  {"id": "CHG-2", "severity": "info", "category": "style",
   "description": "entries are not in date order", "recommendation": ""}
]}}
JSON
