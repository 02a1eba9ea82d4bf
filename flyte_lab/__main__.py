"""`python -m flyte_lab` is `flyte-lab`."""

from flyte_lab.cli.main import entry

if __name__ == "__main__":
    entry()
