from routemix.cli import main

raise SystemExit(main())
