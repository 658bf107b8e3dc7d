"""``python3 -I -m corral.agent CONFIG_JSON``: start the agent on stdin/stdout."""

from corral.agent.loop import main

main()
