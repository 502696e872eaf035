"""``python -m aisopod_session``: the ``aisopod-session`` command line."""

from aisopod_session.cli import main

if __name__ == "__main__":
    main()
