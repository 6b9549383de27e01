# How run.sh launches jobs. Local by default: utils/run.sh runs `JOB=1:N` jobs in parallel on
# this machine, one log per job.
export cpu_cmd="utils/run.sh"
export gpu_cmd="utils/run.sh"      # one process (the teacher-logit dump); on a CPU here
# Training as 2 processes of one thread each (DDP over gloo, torchrun's default of one thread a
# process): on 2 cores 1.35x the speed of one process of two threads, whose threads wait on each
# other in every small layer of these ECAPAs (bench/train_procs.py). The tables of RESULTS.md were
# trained so; BatchNorm is per process (16 chunks each), so another process or thread count trains
# other numbers. One process: export train_cmd="utils/run.sh".
export train_cmd="utils/run.sh --torchrun --nproc-per-node 2"
# The studies (local/study.sh, local/converge.sh) train runs two at a time, one process each.
export study_train_cmd="utils/run.sh"

# On a Slurm cluster, the same jobs as job arrays (utils/slurm.sh has run.sh's interface), and
# training under torchrun: --torchrun starts one launcher per node with --gpus-per-node processes
# (DDP; rendezvous on the allocation's first node). Adjust partitions and limits to your site.
# export cpu_cmd="utils/slurm.sh --partition cpu --time 4:00:00 --mem 8G"
# export train_cmd="utils/slurm.sh --partition gpu --time 72:00:00 --nodes 2 --gpus-per-node 4 --torchrun"
# Several GPUs on this machine:
# export train_cmd="utils/run.sh --torchrun --gpus-per-node 4"
