from msgstatus._cli import main

raise SystemExit(main())
