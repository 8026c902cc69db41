"""``python -m arpo_core.cli``: the ``arpo`` command (what launchers run on each rank)."""

from arpo_core.cli.app import main

if __name__ == "__main__":
    main()
