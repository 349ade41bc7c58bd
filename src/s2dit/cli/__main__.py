"""``python -m s2dit.cli``: the ``s2dit`` command."""

from s2dit.cli import main

if __name__ == "__main__":
    main()
