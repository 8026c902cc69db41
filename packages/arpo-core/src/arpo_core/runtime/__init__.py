"""The async side of arpo (anyio): protocols at the plug points and, as they land, the clients, the agent loop
and the rollout engine. Nothing outside this package starts tasks, opens streams or holds limiters."""
