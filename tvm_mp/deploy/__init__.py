"""Artifacts to run where users run: a standalone aarch64 Linux bundle (no TVM runtime) and the Cortex-M C
bundle; see ``docs/arm.md`` and ``docs/mcu.md``."""
