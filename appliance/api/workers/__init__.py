"""The API as several processes on one port (WEB_PROCESSES): the parent that starts and
restarts them, which worker a process is, and what the workers ask one another."""
