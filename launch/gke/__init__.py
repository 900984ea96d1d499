"""GKE launch: the JobSet template (templates/jobset.yaml) and its renderer (render.py)."""
