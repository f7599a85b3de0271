#!/usr/bin/env python3
"""A runaway "agent" for trying guard without any API key: every step it pretends to call
claude-sonnet-4-6 with a growing context and appends the call's usage to GUARD_USAGE_FILE,
as any agent can (see "Usage-file protocol" in the README). It never stops by itself.
"""
import json
import os
import sys
import time
import uuid

usage_file = os.environ.get("GUARD_USAGE_FILE")
if not usage_file:
    sys.exit("toy_agent: run me under guard: guard --max-usd 0.25 run -- python3 examples/toy_agent.py")

context = 4_000
step = 0
try:
    while True:
        step += 1
        context += 3_000
        call = {"id": f"msg_{uuid.uuid4().hex[:12]}", "model": "claude-sonnet-4-6",
                "input_tokens": 200, "cache_read_input_tokens": context, "cache_creation_input_tokens": 3_000,
                "output_tokens": 800}
        with open(usage_file, "a") as f:
            f.write(json.dumps(call) + "\n")
        print(f"step {step}: read {context:,} tokens of context, wrote a fix, running the tests again...",
              flush=True)
        time.sleep(0.2)
except KeyboardInterrupt:  # guard asks a halted agent to stop with SIGINT first
    print("toy_agent: stopped", flush=True)
    sys.exit(130)
