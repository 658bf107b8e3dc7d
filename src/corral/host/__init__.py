"""The only code that touches the host: cgroups, privileged set-up, the runtime files."""
