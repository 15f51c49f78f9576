"""For graders: compare two builds, verify a build by re-running it, check a report before hand-in."""
