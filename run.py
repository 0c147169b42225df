"""Train one configuration, or sweep many with -m: `python run.py -m hidden=50,100,200`."""

from mlp_sweep.app import run

if __name__ == "__main__":
    run()
