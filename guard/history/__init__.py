"""Usage guard did not supervise: Claude Code transcripts, Codex rollouts and aider's logs read
after the fact (`guard import`), priced and deduplicated as live metering is."""
