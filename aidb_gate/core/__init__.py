"""core: the small container layer every stage stands on (run identity and labels, containers,
networks, wait strategies, the janitor), in the manner of testcontainers' own core."""
