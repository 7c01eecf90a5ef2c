int llama_fake_reduce(int x);
