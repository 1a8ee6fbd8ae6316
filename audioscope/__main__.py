from audioscope.cli import run

run()
