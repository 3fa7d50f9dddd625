#include "engine/reference_generate.h"

#include <algorithm>

namespace crucible {

std::vector<std::vector<int32_t>> greedy_generate_reference(
    Model& model, const std::vector<std::vector<int32_t>>& prompts, int max_new_tokens,
    int32_t stop_token) {
    const int V = model.config().vocab_size;
    const int max_len = model.config().max_position_embeddings;
    std::vector<std::vector<int32_t>> out(prompts.size());
    std::vector<size_t> active;
    for (size_t i = 0; i < prompts.size(); i++) {
        if (!prompts[i].empty()) active.push_back(i);
    }
    PackedBatch batch;
    for (int step = 0; step < max_new_tokens && !active.empty(); step++) {
        batch.clear();
        for (size_t i : active) {
            std::vector<int32_t> seq = prompts[i];
            seq.insert(seq.end(), out[i].begin(), out[i].end());
            if ((int)seq.size() > max_len) seq.erase(seq.begin(), seq.end() - max_len);
            batch.add_sequence(seq, std::vector<int32_t>(seq.size(), 0),
                               std::vector<float>(seq.size(), 0.0f));
        }
        model.forward(batch);
        std::vector<size_t> still;
        for (size_t a = 0; a < active.size(); a++) {
            const int last = batch.seq_start[a] + batch.seq_len[a] - 1;
            const float* row = model.logits() + (size_t)last * V;
            const int32_t next = static_cast<int32_t>(std::max_element(row, row + V) - row);
            out[active[a]].push_back(next);
            if (next != stop_token) still.push_back(active[a]);
        }
        active.swap(still);
    }
    return out;
}

}  // namespace crucible
