"""Running a study on a cluster: placement plan (plan, costs), SLURM job folders (jobdir, slurm), and the entry
points of a job's steps (rank: transmission and MPI feeder ranks; finish: summary.json and runner.json)."""

MEM_MARGIN = 0.25  # a job asks SLURM for the plan's predicted peak memory per node + this share
