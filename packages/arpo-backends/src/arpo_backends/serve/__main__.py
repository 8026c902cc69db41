"""``python -m arpo_backends.serve --model NAME_OR_PATH --port P``."""

from arpo_backends.serve.cli import main

main()
