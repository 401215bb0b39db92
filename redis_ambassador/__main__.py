from redis_ambassador.cli import main

raise SystemExit(main())
