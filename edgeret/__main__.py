from edgeret.cli import main

raise SystemExit(main())
