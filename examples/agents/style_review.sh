# A verifier with a bug of its own: it crashes. Verifiers are fail-open: a warning, no retry.
echo "style-review: cannot load rules file .style-rules.yaml" >&2
exit 2
