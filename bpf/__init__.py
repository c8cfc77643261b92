"""Compiled BPF objects (*.bpf.o) and the headers they share with user space."""
