#include "engine/engine.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/paged_attention.h"

namespace crucible {

namespace k = kernels;

struct Engine::Request {
    int64_t id = 0;
    GenerationRequest req;
    int n = 1;
    int worst_case = 0;    // KV blocks it may ever hold
    int samples_left = 0;  // samples not finished
    bool admitted = false;
    bool rescore = true;
    std::vector<GeneratedSequence> results;
    TokenCallback on_token;
    DoneCallback on_done;
};

struct Engine::Sequence {
    Request* req;
    int sample;  // -1: the request's prompt (prefilled once, then forked into its samples)
    const std::vector<int32_t>* prompt;
    KvCache::Table table;
    int prefilled = 0;         // prompt tokens already in the cache
    int32_t pending = -1;      // sampled token whose KV is computed in the next step
    std::vector<int32_t> out;  // completion so far
    Rng rng;
    bool done = false;
};

struct Engine::Row {
    Sequence* seq;
    int32_t token;
    int32_t pos;
    bool want_logits;
};

Engine::Engine(Model& model, EngineOptions options) : model_(model), options_(std::move(options)) {
    const ModelConfig& c = model_.config();
    if (options_.kv_blocks <= 0) {
        // Enough for max_batch_seqs full contexts, but within a memory budget (a real model's
        // 32k context would otherwise ask for tens of GB); at least the worst case of one
        // sequence that fills the context (worst_case_blocks: a partial prompt block, its
        // copy-on-write copy and the rest), so every request that fits the context can run.
        const int B = KvCache::kBlockSize;
        const int per_seq = (c.max_position_embeddings + B - 1) / B;
        const int64_t one_full = (int64_t)per_seq + 2;
        const double block_bytes = 2.0 * c.num_hidden_layers * B * c.kv_dim() * sizeof(float);
        const int64_t budget = static_cast<int64_t>(
            std::min(options_.kv_budget_bytes / block_bytes, (double)INT32_MAX));
        const int64_t want = (int64_t)per_seq * std::max(1, options_.max_batch_seqs);
        options_.kv_blocks = static_cast<int>(
            std::min<int64_t>(INT32_MAX, std::max(one_full, std::min(want, budget))));
    }
    cache_ = std::make_unique<KvCache>(c, options_.kv_blocks);
}

Engine::~Engine() = default;

void Engine::forward(const std::vector<Row>& rows, std::vector<float>* logits) {
    const ModelConfig& c = model_.config();
    const int N = static_cast<int>(rows.size());
    const int KV = c.kv_dim();
    tokens_.resize(N);
    positions_.resize(N);
    tables_.resize(N);
    logit_rows_.clear();
    for (int i = 0; i < N; i++) {
        tokens_[i] = rows[i].token;
        positions_[i] = rows[i].pos;
        tables_[i] = rows[i].seq->table.blocks.data();
        if (rows[i].want_logits) logit_rows_.push_back(i);
    }
    const k::PagedQueryRows query{N,          c.num_attention_heads, c.num_key_value_heads,
                                  c.head_dim, positions_.data(),     tables_.data()};
    const int M = static_cast<int>(logit_rows_.size());
    logits->resize((size_t)M * c.vocab_size);
    // Each layer: the rows' keys and values go into their sequences' cache slots, then every
    // row attends over its sequence's cached positions 0..pos.
    model_.forward_cached(
        tokens_.data(), positions_.data(), N,
        [&](int l, const float* q, const float* kk, const float* v, float* att) {
            for (int i = 0; i < N; i++) {
                const Row& r = rows[i];
                std::memcpy(cache_->k_at(r.seq->table, l, r.pos), kk + (size_t)i * KV,
                            KV * sizeof(float));
                std::memcpy(cache_->v_at(r.seq->table, l, r.pos), v + (size_t)i * KV,
                            KV * sizeof(float));
            }
            k::paged_attention_forward(att, q, cache_->layer_view(l), query);
        },
        logit_rows_.data(), M, logits->data());
}

void Engine::forward_with_team(const std::vector<Row>& rows) {
    const int max_threads = omp_get_max_threads();
    const int N = static_cast<int>(rows.size());
    if (!options_.adaptive_threads || max_threads <= 1 || N > TeamSizer::kMaxRows) {
        last_step_threads_ = max_threads;
        forward(rows, &logits_);
        return;
    }
    // Multiply-adds: the seven weight matmuls of every layer per row, attention over each
    // row's context, and the LM head for the rows that sample.
    const ModelConfig& c = model_.config();
    const double H = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), I = c.intermediate_size;
    const double per_row = H * Q + 2 * H * KV + Q * H + 3 * H * I;
    double context = 0, sampling = 0;
    for (const Row& r : rows) {
        context += r.pos + 1.0;
        sampling += r.want_logits ? 1 : 0;
    }
    const double macs =
        c.num_hidden_layers * (N * per_row + 2 * Q * context) + sampling * H * c.vocab_size;
    using clock = std::chrono::steady_clock;
    auto seconds = [](clock::time_point t) {
        return std::chrono::duration<double>(t.time_since_epoch()).count();
    };
    const clock::time_point t0 = clock::now();
    const int team = team_.choose(N, N * per_row / 7, macs, max_threads, seconds(t0));
    last_step_threads_ = team;
    // omp_set_num_threads sets the calling thread's own default: put the caller's back.
    struct Restore {
        int threads;
        ~Restore() { omp_set_num_threads(threads); }
    } restore{max_threads};
    omp_set_num_threads(team);
    forward(rows, &logits_);
    const clock::time_point t1 = clock::now();
    team_.record(std::chrono::duration<double>(t1 - t0).count(), seconds(t1));
}

namespace {

// KV blocks a request can ever hold: its prompt, and per sample the rest of the context plus
// one copied block (copy-on-write of the shared partial prompt block).
// In 64 bits: a max_tokens near INT_MAX must not wrap the sum around.
int64_t worst_case_blocks(const GenerationRequest& req, const ModelConfig& c) {
    const int64_t B = KvCache::kBlockSize;
    const int64_t P = static_cast<int64_t>(req.prompt.size());
    const int64_t full = std::min<int64_t>(c.max_position_embeddings,
                                           P + std::max<int64_t>(req.params.max_tokens, 1));
    const int64_t n = std::max(req.n, 1);
    return (P + B - 1) / B + n * ((std::max<int64_t>(full - P, 0) + B - 1) / B + 1);
}

}  // namespace

void Engine::validate(const GenerationRequest& req, const std::string& what) const {
    const ModelConfig& c = model_.config();
    if (req.prompt.empty()) throw Error(what + ": empty prompt");
    if ((int)req.prompt.size() >= c.max_position_embeddings) {
        throw Error(what + ": prompt of " + std::to_string(req.prompt.size()) +
                    " tokens leaves no room in the context of " +
                    std::to_string(c.max_position_embeddings));
    }
    for (int32_t t : req.prompt) {
        if (t < 0 || t >= c.vocab_size) {
            throw Error(what + ": token id out of range (" + std::to_string(t) + " not in [0, " +
                        std::to_string(c.vocab_size) + "))");
        }
    }
    if (!req.sample_seeds.empty() && (int)req.sample_seeds.size() != std::max(req.n, 1)) {
        throw Error(what + ": " + std::to_string(req.sample_seeds.size()) +
                    " sample seeds for n = " + std::to_string(req.n));
    }
    if (req.continue_from != 0 && std::max(req.n, 1) != 1)
        throw Error(what + ": continue_from needs n = 1");
    if (worst_case_blocks(req, c) > cache_->num_blocks()) {
        throw Error(what + " needs more KV cache blocks than the engine has (" +
                    std::to_string(cache_->num_blocks()) + ")");
    }
}

int64_t Engine::submit(GenerationRequest request, TokenCallback on_token, DoneCallback on_done,
                       bool rescore_when_done) {
    const int64_t id = next_id_++;
    validate(request, "generation request " + std::to_string(id));
    auto r = std::make_unique<Request>();
    r->id = id;
    r->n = std::max(request.n, 1);
    r->worst_case = static_cast<int>(worst_case_blocks(request, model_.config()));  // validated
    r->samples_left = r->n;
    r->rescore = rescore_when_done;
    r->results.resize(r->n);
    r->req = std::move(request);
    r->on_token = std::move(on_token);
    r->on_done = std::move(on_done);
    waiting_.push_back(r.get());
    requests_.emplace(id, std::move(r));
    return id;
}

bool Engine::cancel(int64_t id) {
    const auto it = requests_.find(id);
    if (it == requests_.end()) return false;
    Request* r = it->second.get();
    if (!r->admitted) {
        waiting_.erase(std::find(waiting_.begin(), waiting_.end(), r));
    } else {
        for (Sequence* s : active_) {
            if (s->req != r) continue;
            cache_->release(s->table);
            s->done = true;
        }
        std::erase_if(active_, [r](Sequence* s) { return s->req == r; });
        running_samples_ -= r->samples_left;
        committed_ -= r->worst_case;
    }
    std::erase_if(seqs_, [r](const std::unique_ptr<Sequence>& s) { return s->req == r; });
    requests_.erase(it);
    return true;
}

bool Engine::release(int64_t handle) {
    const auto it = held_.find(handle);
    if (it == held_.end()) return false;
    held_blocks_ -= static_cast<int>(it->second.table.blocks.size());
    cache_->release(it->second.table);
    held_.erase(it);
    return true;
}

bool Engine::evict_held(int64_t keep) {
    if (held_.empty()) return false;
    auto victim = held_.begin();
    if (victim->first == keep && held_.size() > 1) ++victim;
    release(victim->first);
    evicted_held_++;
    return true;
}

void Engine::admit() {
    // Admit requests while the KV pool can hold every admitted request's worst case, so no
    // sequence ever needs preempting. Held sequences (kept for a continuation) give way: the
    // oldest is evicted while a request would not fit beside them.
    while (!waiting_.empty()) {
        Request* r = waiting_.front();
        const int64_t keep = r->req.continue_from;
        while ((int64_t)committed_ + held_blocks_ + r->worst_case > cache_->num_blocks() &&
               evict_held(keep)) {
        }
        if (committed_ > 0 &&
            ((int64_t)committed_ + held_blocks_ + r->worst_case > cache_->num_blocks() ||
             running_samples_ + r->n > options_.max_batch_seqs)) {
            break;
        }
        committed_ += r->worst_case;
        running_samples_ += r->n;
        r->admitted = true;
        auto s = std::make_unique<Sequence>();
        s->req = r;
        s->sample = -1;
        s->prompt = &r->req.prompt;
        // A continuation starts from its held KV when the ids still match; the rest of the
        // prompt is prefilled as usual.
        if (const auto h = held_.find(keep); keep != 0 && h != held_.end()) {
            const std::vector<int32_t>& have = h->second.tokens;
            const bool extends = have.size() < r->req.prompt.size() &&
                                 std::equal(have.begin(), have.end(), r->req.prompt.begin());
            if (extends) {
                held_blocks_ -= static_cast<int>(h->second.table.blocks.size());
                s->table = std::move(h->second.table);
                s->prefilled = static_cast<int>(have.size());
                held_.erase(h);
            } else {
                release(keep);
            }
        }
        active_.push_back(s.get());
        seqs_.push_back(std::move(s));
        waiting_.pop_front();
    }
}

void Engine::finish(Sequence* s, const char* why) {
    s->done = true;
    Request* r = s->req;
    GeneratedSequence& g = r->results[s->sample];
    if (r->req.hold) {
        // Keep the KV of the prompt and the completion but its last token (drawn, not yet
        // run through the model).
        Held h;
        h.tokens = *s->prompt;
        h.tokens.insert(h.tokens.end(), s->out.begin(), s->out.end() - 1);
        h.table = std::move(s->table);
        s->table = {};
        held_blocks_ += static_cast<int>(h.table.blocks.size());
        g.held = next_held_++;
        held_.emplace(g.held, std::move(h));
    } else {
        cache_->release(s->table);
    }
    g.tokens = s->out;
    g.finish_reason = why;
    running_samples_--;
    if (--r->samples_left == 0) {
        committed_ -= r->worst_case;
        completed_.push_back(r);
    }
}

void Engine::accept(Sequence* s, int32_t tok) {
    const SamplingParams& p = s->req->req.params;
    s->out.push_back(tok);
    const char* why = nullptr;
    if (std::find(p.stop_ids.begin(), p.stop_ids.end(), tok) != p.stop_ids.end()) why = "stop";
    if (!why && !p.stop_strings.empty() && options_.detokenize) {
        const std::string text = options_.detokenize(s->out);
        for (const std::string& stop : p.stop_strings) {
            if (!stop.empty() && text.find(stop) != std::string::npos) why = "stop";
        }
    }
    if (!why &&
        ((int)s->out.size() >= p.max_tokens ||
         (int)(s->prompt->size() + s->out.size()) >= model_.config().max_position_embeddings)) {
        why = "length";
    }
    if (s->req->on_token) s->req->on_token(s->sample, tok, why ? why : "");
    if (why) {
        finish(s, why);
    } else {
        s->pending = tok;
    }
}

bool Engine::step() {
    if (active_.empty() && waiting_.empty()) return false;
    const int V = model_.config().vocab_size;
    admit();
    // Build the step: a token for every decoding sequence, then prompt chunks.
    std::vector<Row>& rows = rows_;
    rows.clear();
    for (Sequence* s : active_) {
        if (s->sample >= 0 && !s->done) {
            if (!cache_->reserve(s->table, 1)) throw Error("KV cache exhausted during decode");
            rows.push_back({s, s->pending, s->table.length, true});
            s->table.length++;
        }
    }
    decode_tokens_ += rows.size();
    last_step_sequences_ = static_cast<int>(rows.size());
    int budget = std::max(options_.max_batch_tokens - (int)rows.size(), 1);
    for (Sequence* s : active_) {
        if (s->sample >= 0 || budget <= 0) continue;
        const int left = (int)s->prompt->size() - s->prefilled;
        const int chunk = std::min(left, budget);
        if (!cache_->reserve(s->table, chunk)) break;
        for (int j = 0; j < chunk; j++) {
            const int pos = s->prefilled + j;
            rows.push_back({s, (*s->prompt)[pos], pos, pos == (int)s->prompt->size() - 1});
        }
        s->table.length += chunk;
        s->prefilled += chunk;
        budget -= chunk;
        prefill_tokens_ += chunk;
        last_step_sequences_++;
    }
    if (!rows.empty()) forward_with_team(rows);
    steps_++;
    // Sample: logits rows follow the order of rows with want_logits.
    int li = 0;
    std::vector<Sequence*> forked;
    for (const Row& row : rows) {
        if (!row.want_logits) continue;
        const float* row_logits = logits_.data() + (size_t)(li++) * V;
        Sequence* s = row.seq;
        const GenerationRequest& req = s->req->req;
        if (s->sample >= 0) {
            accept(s, sample_token(row_logits, V, req.params, s->rng));
            continue;
        }
        // The prompt is in the cache: its samples share it and draw their first tokens.
        for (int i = 0; i < s->req->n; i++) {
            auto child = std::make_unique<Sequence>();
            child->req = s->req;
            child->sample = i;
            child->prompt = s->prompt;
            child->prefilled = s->prefilled;
            child->table = cache_->fork(s->table);
            child->rng.reseed(req.sample_seeds.empty()
                                  ? Rng::mix(req.params.seed, static_cast<uint64_t>(i))
                                  : Rng::mix(req.sample_seeds[i], 0));
            accept(child.get(), sample_token(row_logits, V, req.params, child->rng));
            forked.push_back(child.get());
            seqs_.push_back(std::move(child));
        }
        cache_->release(s->table);
        s->done = true;
    }
    std::vector<Sequence*> still;
    for (Sequence* s : active_) {
        if (!s->done) still.push_back(s);
    }
    for (Sequence* s : forked) {
        if (!s->done) still.push_back(s);
    }
    active_.swap(still);
    std::erase_if(seqs_, [](const std::unique_ptr<Sequence>& s) { return s->done; });
    // Hand finished requests over (after the batch is consistent: callbacks may be slow).
    std::vector<Request*> completed;
    completed.swap(completed_);
    for (Request* r : completed) {
        std::vector<std::vector<GeneratedSequence>> results(1);
        results[0] = std::move(r->results);
        if (r->rescore && r->req.params.logprobs >= 0) rescore({r->req}, &results);
        const DoneCallback on_done = std::move(r->on_done);
        requests_.erase(r->id);
        if (on_done) on_done(std::move(results[0]));
    }
    return true;
}

std::vector<std::vector<GeneratedSequence>> Engine::generate(
    const std::vector<GenerationRequest>& requests,
    const std::function<void(int64_t, int64_t)>& on_progress,
    const std::function<void(size_t, const std::vector<GeneratedSequence>&)>& on_request_done) {
    if (!requests_.empty()) throw Error("Engine::generate: submitted requests are outstanding");
    for (size_t r = 0; r < requests.size(); r++)
        validate(requests[r], "generation request " + std::to_string(r));
    steps_ = prefill_tokens_ = decode_tokens_ = 0;
    std::vector<std::vector<GeneratedSequence>> results(requests.size());
    int64_t finished = 0, generated = 0;
    for (size_t r = 0; r < requests.size(); r++) {
        submit(
            requests[r],
            [&](int, int32_t, const std::string& finish) {
                generated++;
                if (!finish.empty()) finished++;
            },
            [&results, &on_request_done, r](std::vector<GeneratedSequence>&& out) {
                results[r] = std::move(out);
                if (on_request_done) on_request_done(r, results[r]);
            },
            /*rescore_when_done=*/false);
    }
    while (step()) {
        if (on_progress) on_progress(finished, generated);
    }
    // All samples re-scored together, packed in request order (what the RL trainer expects).
    rescore(requests, &results);
    return results;
}

void Engine::rescore(const std::vector<GenerationRequest>& requests,
                     std::vector<std::vector<GeneratedSequence>>* results) {
    const int V = model_.config().vocab_size;
    struct Item {
        size_t r, i;
    };
    std::vector<Item> items;
    for (size_t r = 0; r < requests.size(); r++) {
        if (requests[r].params.logprobs < 0) continue;
        for (size_t i = 0; i < (*results)[r].size(); i++) {
            if (!(*results)[r][i].tokens.empty()) items.push_back({r, i});
        }
    }
    // Pack sequences into batches of about max_batch_tokens * 4 rows for the trainer's forward.
    const size_t budget = std::max<size_t>(4 * options_.max_batch_tokens, 1024);
    size_t at = 0;
    while (at < items.size()) {
        PackedBatch batch;
        std::vector<Item> in_batch;
        while (at < items.size()) {
            const Item it = items[at];
            const std::vector<int32_t>& prompt = requests[it.r].prompt;
            const std::vector<int32_t>& out = (*results)[it.r][it.i].tokens;
            const size_t len = prompt.size() + out.size() - 1;
            if (!in_batch.empty() && batch.tokens.size() + len > budget) break;
            std::vector<int32_t> seq(prompt);
            seq.insert(seq.end(), out.begin(), out.end());
            std::vector<int32_t> inputs(seq.begin(), seq.end() - 1),
                next(seq.begin() + 1, seq.end());
            batch.add_sequence(inputs, next, std::vector<float>(inputs.size(), 0.0f));
            in_batch.push_back(it);
            at++;
        }
        model_.forward(batch);
        for (size_t b = 0; b < in_batch.size(); b++) {
            const Item it = in_batch[b];
            GeneratedSequence& g = (*results)[it.r][it.i];
            const int top_n = requests[it.r].params.logprobs;
            const int first = batch.seq_start[b] + (int)requests[it.r].prompt.size() - 1;
            g.logprobs.clear();
            g.top_logprobs.clear();
            for (size_t t = 0; t < g.tokens.size(); t++) {
                const int row = first + (int)t;
                const float loss = model_.token_losses()[row];
                g.logprobs.push_back(-loss);
                if (top_n <= 0) continue;
                const float* lg = model_.logits() + (size_t)row * V;
                const float lse = loss + lg[g.tokens[t]];
                std::vector<int32_t> ids(V);
                for (int j = 0; j < V; j++) ids[j] = j;
                const int n = std::min(top_n, V);
                std::partial_sort(ids.begin(), ids.begin() + n, ids.end(),
                                  [&](int32_t a, int32_t c) {
                                      return lg[a] > lg[c] || (lg[a] == lg[c] && a < c);
                                  });
                std::vector<TokenLogprob> alts;
                for (int j = 0; j < n; j++) alts.push_back({ids[j], lg[ids[j]] - lse});
                g.top_logprobs.push_back(std::move(alts));
            }
        }
    }
}

}  // namespace crucible
