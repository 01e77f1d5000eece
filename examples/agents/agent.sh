# A stand-in for an agent CLI (see [agents] agent_cli in the demo's stoic.toml): it fixes two
# lint errors a round, but cannot fix the last one without a person's decision.
# Called as: sh agent.sh ROLE PROMPT
left=$(cat .lint-errors 2>/dev/null || echo 5)
if [ "$left" -gt 1 ]; then left=$((left - 2)); fi
[ "$left" -lt 1 ] && left=1
echo "$left" > .lint-errors
echo "[$1] round ${STOIC_ITERATION:-1}: $left lint error(s) left"
