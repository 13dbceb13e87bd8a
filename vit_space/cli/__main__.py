import sys

from vit_space.cli.main import main

sys.exit(main())
