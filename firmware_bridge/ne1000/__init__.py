"""New Era NE-1000 family: the byte-exact codec and the emulated pump side."""
