"""kerntrace engine, tracers and command lines."""
