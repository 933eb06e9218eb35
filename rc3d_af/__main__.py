import sys

from rc3d_af.cli import main

sys.exit(main())
