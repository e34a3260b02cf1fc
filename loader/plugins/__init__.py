"""The plugin side of the loader: plugin folders in, supervised plugin processes out.

A folder is read into a validated spec (manifest, digest, fingerprint, folders),
a pure decision compares it with what runs (decision), the reconciler acts on
that decision, and one supervisor per plugin keeps its process alive through
starts, swaps, probation and stops (supervisor, states, process, runner).  The
symbols each running plugin provides are recorded in one registry (symbols).
"""
