echo "certbot: rate limit check failed: the ACME client needs an update" >&2
echo '{"failure": {"kind": "tool_error", "message": "the ACME client is too old for the CA"}}' > "$STOIC_RESULT"
exit 1
