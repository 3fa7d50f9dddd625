#include "rl/rl_config.h"

#include "core/error.h"
#include "reward/python_reward.h"

namespace crucible::rl {

namespace {

RlRubricConfig read_rubric(const Config& c) {
    RlRubricConfig r;
    r.judge = c.get_string("rubric.judge");
    r.mode = c.get_string("rubric.mode");
    r.aggregation = c.get_string("rubric.aggregation");
    r.votes = static_cast<int>(c.get_int("rubric.votes"));
    r.temperature = c.get_double("rubric.temperature");
    r.max_tokens = static_cast<int>(c.get_int("rubric.max_tokens"));
    r.concurrency = static_cast<int>(c.get_int("rubric.concurrency"));
    r.timeout_s = c.get_double("rubric.timeout_s");
    r.cache = c.get_string("rubric.cache");
    r.price_in = c.get_double("rubric.price_in");
    r.price_out = c.get_double("rubric.price_out");
    return r;
}

RlRolloutConfig read_rollout(const Config& c) {
    RlRolloutConfig r;
    r.prompts_per_step = static_cast<int>(c.get_int("rollout.prompts_per_step"));
    r.samples_per_prompt = static_cast<int>(c.get_int("rollout.samples_per_prompt"));
    r.temperature = c.get_double("rollout.temperature");
    r.top_p = c.get_double("rollout.top_p");
    r.top_k = static_cast<int>(c.get_int("rollout.top_k"));
    r.max_new_tokens = static_cast<int>(c.get_int("rollout.max_new_tokens"));
    return r;
}

// The enums are parsed in this order, so of several bad names the first is reported.
RlAlgorithmConfig read_algorithm(const Config& c) {
    RlAlgorithmConfig a;
    a.advantage = parse_advantage_mode(c.get_string("algorithm.advantage"), "algorithm.advantage");
    a.ratio = parse_ratio_level(c.get_string("algorithm.ratio"), "algorithm.ratio");
    a.loss_aggregation = parse_loss_aggregation(c.get_string("algorithm.loss_aggregation"),
                                                "algorithm.loss_aggregation");
    a.kl_estimator =
        parse_kl_estimator(c.get_string("algorithm.kl_estimator"), "algorithm.kl_estimator");
    a.dynamic_sampling_metric =
        parse_dynamic_sampling_metric(c.get_string("algorithm.dynamic_sampling_metric"));
    a.clip_low = c.get_double("algorithm.clip_low");
    a.clip_high = c.get_double("algorithm.clip_high");
    a.dual_clip = c.get_double("algorithm.dual_clip");
    a.kl_beta = c.get_double("algorithm.kl_beta");
    a.overlong_filter = c.get_bool("algorithm.overlong_filter");
    a.overlong_cache = static_cast<int>(c.get_int("algorithm.overlong_cache"));
    a.dynamic_sampling = c.get_bool("algorithm.dynamic_sampling");
    a.max_generation_batches = static_cast<int>(c.get_int("algorithm.max_generation_batches"));
    a.updates_per_batch = static_cast<int>(c.get_int("algorithm.updates_per_batch"));
    a.minibatches = static_cast<int>(c.get_int("algorithm.minibatches"));
    return a;
}

// All of train.* but train.schedule, which is checked with the cross-key rules.
RlTrainConfig read_train(const Config& c) {
    RlTrainConfig t;
    t.steps = c.get_int("train.steps");
    t.lr = c.get_double("train.lr");
    t.min_lr_ratio = c.get_double("train.min_lr_ratio");
    t.warmup_steps = c.get_int("train.warmup_steps");
    t.weight_decay = c.get_double("train.weight_decay");
    t.beta1 = c.get_double("train.beta1");
    t.beta2 = c.get_double("train.beta2");
    t.eps = c.get_double("train.eps");
    t.grad_clip = c.get_double("train.grad_clip");
    t.dtype = parse_matmul_dtype(c.get_string("train.dtype"), "train.dtype");
    t.micro_batch_tokens = c.get_int("train.micro_batch_tokens");
    t.checkpoint_every = c.get_int("train.checkpoint_every");
    t.log_every = c.get_int("train.log_every");
    t.eval_every = c.get_int("train.eval_every");
    t.eval_samples = static_cast<int>(c.get_int("train.eval_samples"));
    t.eval_problems = c.get_int("train.eval_problems");
    return t;
}

// The rules that tie keys together or are not one interval, in the order they are reported.
void check_rl_config(const RlConfig& r, const std::string& schedule) {
    // Every advantage mode centres on the group mean (batch_std too: only its scale is the
    // batch's), so a group of one sample has advantage 0 and the run would train on nothing.
    if (r.rollout.samples_per_prompt < 2) {
        throw Error("config: rollout.samples_per_prompt must be >= 2: algorithm.advantage " +
                    std::string(to_string(r.algorithm.advantage)) +
                    " subtracts the group mean, so one sample per prompt gives every advantage 0");
    }
    if (r.env.name == EnvKind::server &&
        (!r.rewards.python.file.empty() || r.rewards.rubric != 0.0 ||
         r.rewards.soft_overlong != 0.0)) {
        throw Error(std::string("config: rewards.") +
                    (!r.rewards.python.file.empty() ? "python.file"
                     : r.rewards.rubric != 0.0      ? "rubric"
                                                    : "soft_overlong") +
                    ": with env.name server the agent posts each episode's reward; score it "
                    "in the agent");
    }
    if (r.algorithm.minibatches > r.rollout.prompts_per_step) {
        throw Error(
            "config: algorithm.minibatches must not exceed rollout.prompts_per_step (mini-batches "
            "split the batch by groups)");
    }
    const double dual = r.algorithm.dual_clip;
    if (dual != 0.0 && dual <= 1.0) {
        throw Error("config: algorithm.dual_clip must be 0 (off) or > 1");
    }
    if (dual != 0.0 && r.algorithm.ratio == RatioLevel::sequence) {
        throw Error(
            "config: algorithm.dual_clip and algorithm.ratio: sequence conflict (GSPO "
            "clips the sequence ratio; dual-clip is a per-token rule)");
    }
    if (r.rewards.soft_overlong != 0.0 && r.algorithm.overlong_cache > r.rollout.max_new_tokens) {
        throw Error(
            "config: algorithm.overlong_cache must be in 1..rollout.max_new_tokens when "
            "rewards.soft_overlong is on");
    }
    if (schedule != "cosine" && schedule != "constant") {
        throw Error("config: train.schedule must be cosine or constant, got '" + schedule + "'");
    }
    if (r.model.path.empty()) {
        throw Error(
            "config: model.path: RL starts from a checkpoint folder (e.g. an SFT run's "
            "checkpoints/step-N)");
    }
}

}  // namespace

DynamicSamplingMetric parse_dynamic_sampling_metric(const std::string& value) {
    if (value == "accuracy") return DynamicSamplingMetric::accuracy;
    if (value == "reward") return DynamicSamplingMetric::reward;
    throw Error("config: algorithm.dynamic_sampling_metric: unknown value '" + value +
                "' (expected accuracy or reward)");
}

EnvKind parse_env_kind(const std::string& value) {
    if (value == "single_turn") return EnvKind::single_turn;
    if (value == "calculator") return EnvKind::calculator;
    if (value == "search") return EnvKind::search;
    if (value == "python") return EnvKind::python;
    if (value == "server") return EnvKind::server;
    throw Error("config: env.name: unknown environment '" + value +
                "' (expected single_turn, calculator, search, python or server)");
}

const char* to_string(EnvKind kind) {
    switch (kind) {
        case EnvKind::calculator:
            return "calculator";
        case EnvKind::search:
            return "search";
        case EnvKind::python:
            return "python";
        case EnvKind::server:
            return "server";
        case EnvKind::single_turn:
            break;
    }
    return "single_turn";
}

RlEnvConfig read_rl_env_config(const Config& c) {
    RlEnvConfig e;
    e.name = parse_env_kind(c.get_string("env.name"));
    e.max_turns = static_cast<int>(c.get_int("env.max_turns"));
    e.max_tokens_per_turn = static_cast<int>(c.get_int("env.max_tokens_per_turn"));
    e.max_context = static_cast<int>(c.get_int("env.max_context"));
    e.max_observation_tokens = static_cast<int>(c.get_int("env.max_observation_tokens"));
    e.tool_workers = static_cast<int>(c.get_int("env.tool_workers"));
    e.step_timeout_s = c.get_double("env.step_timeout_s");
    const std::string syntax = c.get_string("env.syntax");
    if (syntax == "search_r1") {
        e.syntax = ToolSyntax::search_r1;
    } else if (syntax == "hermes") {
        e.syntax = ToolSyntax::hermes;
    } else {
        throw Error("config: env.syntax: unknown tool-call syntax '" + syntax +
                    "' (expected search_r1 or hermes)");
    }
    e.index = c.get_string("env.index");
    e.top_k = static_cast<int>(c.get_int("env.top_k"));
    e.max_passage_chars = static_cast<int>(c.get_int("env.max_passage_chars"));
    e.tool_timeout_s = c.get_double("env.tool_timeout_s");
    e.python_memory_mb = static_cast<int>(c.get_int("env.python_memory_mb"));
    e.max_output_chars = static_cast<int>(c.get_int("env.max_output_chars"));
    e.server_host = c.get_string("env.server.host");
    e.server_port = static_cast<int>(c.get_int("env.server.port"));
    e.session_timeout_s = c.get_double("env.server.session_timeout_s");
    e.server_agent = c.get_string("env.server.agent");
    if (e.name == EnvKind::search) {
        if (e.index.empty())
            throw Error(
                "config: env.index: the search environment needs an index folder "
                "(crucible index build --docs DOCS.jsonl --out DIR)");
        try {
            e.search_index = std::make_shared<const SearchIndex>(SearchIndex::open(e.index));
        } catch (const Error& ex) {
            throw Error(std::string("config: env.index: ") + ex.what());
        }
    }
    return e;
}

namespace {}  // namespace

RlTaskConfig read_rl_task_config(const Config& c) {
    RlTaskConfig t;
    t.name = c.get_string("task.name");
    t.data = c.get_string("task.data");
    t.eval_data = c.get_string("task.eval_data");
    t.verifier = c.get_string("task.verifier");
    t.chat = c.get_bool("task.chat");
    t.train_examples = static_cast<int>(c.get_int("task.train_examples"));
    t.eval_examples = static_cast<int>(c.get_int("task.eval_examples"));
    t.max_digits = static_cast<int>(c.get_int("task.max_digits"));
    return t;
}

RlConfig read_rl_config(const Config& c) {
    RlConfig r;
    r.run.name = c.get_string("run.name");
    r.run.dir = c.get_string("run.dir");
    r.seed = static_cast<uint64_t>(c.get_int("seed"));
    r.model.path = c.get_string("model.path");
    r.task = read_rl_task_config(c);
    r.env = read_rl_env_config(c);
    r.rewards.correct = c.get_double("rewards.correct");
    r.rewards.format = c.get_double("rewards.format");
    r.rewards.soft_overlong = c.get_double("rewards.soft_overlong");
    r.rewards.verifier_timeout_s = c.get_double("rewards.verifier_timeout_s");
    r.rewards.rubric = c.get_double("rewards.rubric");
    RlPythonRewardConfig& py = r.rewards.python;
    py.file = c.get_string("rewards.python.file");
    py.function = c.get_string("rewards.python.function");
    py.signature = c.get_string("rewards.python.signature");
    py.timeout_s = c.get_double("rewards.python.timeout_s");
    py.workers = static_cast<int>(c.get_int("rewards.python.workers"));
    py.sandbox = c.get_bool("rewards.python.sandbox");
    py.weight = c.get_double("rewards.python.weight");
    reward::parse_python_signature(py.signature, "config: rewards.python.signature");
    if (!py.file.empty() && py.function.empty())
        throw Error("config: rewards.python.function: name the function in " + py.file);
    r.rubric = read_rubric(c);
    r.rollout = read_rollout(c);
    r.algorithm = read_algorithm(c);
    r.train = read_train(c);
    r.lora = read_lora_settings(c);
    const std::string schedule = c.get_string("train.schedule");
    check_rl_config(r, schedule);
    r.train.schedule =
        schedule == "cosine" ? kernels::LrSchedule::cosine : kernels::LrSchedule::constant;
    return r;
}

PolicyLossOptions RlConfig::loss_options() const {
    PolicyLossOptions o;
    o.ratio = algorithm.ratio;
    o.clip_low = algorithm.clip_low;
    o.clip_high = algorithm.clip_high;
    o.dual_clip = algorithm.dual_clip;
    o.aggregation = algorithm.loss_aggregation;
    o.kl_beta = algorithm.kl_beta;
    o.kl = algorithm.kl_estimator;
    o.max_completion_tokens = rollout.max_new_tokens;
    return o;
}

int64_t RlConfig::total_optimizer_steps() const {
    return train.steps * algorithm.updates_per_batch * algorithm.minibatches;
}

}  // namespace crucible::rl
