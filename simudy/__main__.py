from simudy.cli import main

raise SystemExit(main())
