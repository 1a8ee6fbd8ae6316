import sys

from audioscope.cli import main

sys.exit(main())
