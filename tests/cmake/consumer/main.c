#include <stdio.h>

#include "llama.h"

int main(void)
{
    printf("reduce(20) = %d\n", llama_fake_reduce(20));
    return llama_fake_reduce(20) == 41 ? 0 : 1;
}
