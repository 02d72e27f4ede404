"""What the tests share: spec builders, method contexts, trained teachers, drivers of sweeps run
as subprocesses. Test modules import from here, never from each other."""
