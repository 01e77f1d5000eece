# The iterate check: how many lint errors are left (the runner reads "failures").
left=$(cat .lint-errors 2>/dev/null || echo 5)
echo "E501 line too long (api/handlers.py) x$left"
printf '{"failures": %s}\n' "$left" > "$STOIC_RESULT"
