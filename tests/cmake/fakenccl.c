int fake_nccl_all_reduce(int x);

int fake_nccl_all_reduce(int x) { return 2 * x; }
