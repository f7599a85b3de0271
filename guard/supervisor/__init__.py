"""The agent process: spawning it, its terminal, and control of its whole process tree."""
