# Site setup: what your cluster needs before hpcsim runs. hpcsim copies this file into job.sbatch
# (hpcsim jobs render --prologue FILE); replace these lines with your site's.
# module load python/3.11
# source "$HOME/venvs/hpcsim/bin/activate"
export OMP_NUM_THREADS=1  # every federate and feeder rank runs single-threaded
