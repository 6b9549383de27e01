# How run.sh launches jobs. Local by default: utils/run.sh runs `JOB=1:N` jobs in parallel on
# this machine, one log per job.
export cpu_cmd="utils/run.sh"
export gpu_cmd="utils/run.sh"      # one process (the teacher-logit dump); on a CPU here
export train_cmd="utils/run.sh"

# On a Slurm cluster, the same jobs as job arrays (utils/slurm.sh has run.sh's interface), and
# training under torchrun: --torchrun starts one launcher per node with --gpus-per-node processes
# (DDP; rendezvous on the allocation's first node). Adjust partitions and limits to your site.
# export cpu_cmd="utils/slurm.sh --partition cpu --time 4:00:00 --mem 8G"
# export train_cmd="utils/slurm.sh --partition gpu --time 72:00:00 --nodes 2 --gpus-per-node 4 --torchrun"
# Several GPUs on this machine:
# export train_cmd="utils/run.sh --torchrun --gpus-per-node 4"
