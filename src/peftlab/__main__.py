"""`python -m peftlab ...` is the `peftlab` command; `accelerate launch -m peftlab run ...` starts it per process."""

from peftlab.cli import entry

if __name__ == "__main__":
    entry()
