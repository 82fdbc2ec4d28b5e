"""Running a study on a cluster: placement plan (plan, costs), SLURM job folders (jobdir, slurm), and the entry
points of a job's steps (rank: brokers, transmission, MPI feeder ranks; finish: summary.json)."""
