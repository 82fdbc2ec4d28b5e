"""Run outputs: Parquet datasets (one file per federate and time step) and the run summary."""
