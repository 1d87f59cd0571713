"""flyby's Gymnasium envs. Importing this package imports no simulator."""
