#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"

namespace crucible::kernels {

// H = log Z - (sum_v e_v x_v) / Z with x_v = logit_v - max and e_v = exp(x_v), Z = sum_v e_v:
// the row's max comes out exactly, every exp is <= 1, and the sums run in double in index
// order. std::exp in double, not fast_exp: entropy is a logged statistic, kept bit for bit
// what the RL trainer logged when this loop was inline there (rows are independent, so the
// threads change nothing).
void entropy_forward(double* entropy, const float* logits, int N, int V) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float* row = logits + (size_t)n * V;
        const float mx = *std::max_element(row, row + V);
        double z = 0.0, zx = 0.0;
        for (int v = 0; v < V; v++) {
            const double e = std::exp(double(row[v]) - mx);
            z += e;
            zx += e * (double(row[v]) - mx);
        }
        entropy[n] = std::log(z) - zx / z;
    }
}

}  // namespace crucible::kernels
