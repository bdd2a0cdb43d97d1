"""A scripted agent for the fleet tests: logs who ran what, fails when its name is listed."""

import os
import sys

prompt = sys.argv[1]
agent = os.environ["ORCH_AGENT"]
with open(os.environ["FLEET_LOG"], "a", encoding="utf-8") as log:
    log.write(f"{os.environ['ORCH_TASK_ID']} {os.environ['ORCH_ATTEMPT']} {agent}\n")
failing = prompt.split("fail-on:", 1)[1].split(",") if "fail-on:" in prompt else []
sys.exit(1 if agent in failing else 0)
