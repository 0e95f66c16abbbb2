"""pytest plugin (entry point ``msgstatus``): fixtures that start the loopback emulators."""
