// The idempotent-replay cache in nginx shared memory (see replay_cache.hpp).
#include "replay_cache.hpp"

#include <cstddef>
#include <cstring>

#include "replay_policy.hpp"

extern ngx_module_t ngx_http_paygate_module;

namespace paygate::module {

namespace {

constexpr std::size_t kHashBytes = 32;   // SHA-256

// One recorded outcome, in the slab pool. Plain data: offsetof and memcpy are safe.
struct ReplayNode {
    ngx_rbtree_node_t node;          // node.key: the first bytes of the scope (uniformly random)
    ngx_queue_t lru;                 // most recently used at the head
    u_char scope[kHashBytes];
    u_char request_hash[kHashBytes];
    time_t expires;
    std::uint16_t status;
    std::uint32_t body_len;
    u_char body[1];
};

struct ReplayShared {
    ngx_rbtree_t rbtree;
    ngx_rbtree_node_t sentinel;
    ngx_queue_t lru;
};

// shm_zone->data: where this cycle finds the shared structures.
struct ZoneCtx {
    ReplayShared* sh;
    ngx_slab_pool_t* pool;
};

ReplayNode* node_of(ngx_rbtree_node_t* n) {
    return reinterpret_cast<ReplayNode*>(reinterpret_cast<u_char*>(n) - offsetof(ReplayNode, node));
}

ReplayNode* lru_node(ngx_queue_t* q) {
    return reinterpret_cast<ReplayNode*>(reinterpret_cast<u_char*>(q) - offsetof(ReplayNode, lru));
}

bool unhex(std::string_view hex, u_char* out) {
    if (hex.size() != kHashBytes * 2) return false;
    auto digit = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < kHashBytes; ++i) {
        int hi = digit(hex[2 * i]);
        int lo = digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = static_cast<u_char>(hi << 4 | lo);
    }
    return true;
}

ngx_rbtree_key_t tree_key(const u_char* scope) {
    ngx_rbtree_key_t key = 0;
    std::memcpy(&key, scope, sizeof key);
    return key;
}

void rbtree_insert(ngx_rbtree_node_t* temp, ngx_rbtree_node_t* node, ngx_rbtree_node_t* sentinel) {
    ngx_rbtree_node_t** p;
    for (;;) {
        if (node->key != temp->key) {
            p = node->key < temp->key ? &temp->left : &temp->right;
        } else {
            p = std::memcmp(node_of(node)->scope, node_of(temp)->scope, kHashBytes) < 0 ? &temp->left : &temp->right;
        }
        if (*p == sentinel) break;
        temp = *p;
    }
    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}

ReplayNode* find_locked(ReplayShared* sh, const u_char* scope) {
    ngx_rbtree_key_t key = tree_key(scope);
    ngx_rbtree_node_t* n = sh->rbtree.root;
    ngx_rbtree_node_t* sentinel = sh->rbtree.sentinel;
    while (n != sentinel) {
        if (key != n->key) {
            n = key < n->key ? n->left : n->right;
            continue;
        }
        int rc = std::memcmp(scope, node_of(n)->scope, kHashBytes);
        if (rc == 0) return node_of(n);
        n = rc < 0 ? n->left : n->right;
    }
    return nullptr;
}

void remove_locked(ZoneCtx* ctx, ReplayNode* rn) {
    ngx_queue_remove(&rn->lru);
    ngx_rbtree_delete(&ctx->sh->rbtree, &rn->node);
    ngx_slab_free_locked(ctx->pool, rn);
}

// Drops the least recently used entry, or only an expired one when `expired_only`.
bool evict_one_locked(ZoneCtx* ctx, bool expired_only) {
    if (ngx_queue_empty(&ctx->sh->lru)) return false;
    ReplayNode* oldest = lru_node(ngx_queue_last(&ctx->sh->lru));
    if (expired_only && oldest->expires > ngx_time()) return false;
    remove_locked(ctx, oldest);
    return true;
}

ngx_int_t init_zone(ngx_shm_zone_t* shm_zone, void* old_data) {
    auto* ctx = static_cast<ZoneCtx*>(shm_zone->data);
    if (old_data != nullptr) {
        // nginx -s reload: the zone and every key in it carry over.
        auto* old = static_cast<ZoneCtx*>(old_data);
        ctx->sh = old->sh;
        ctx->pool = old->pool;
        return NGX_OK;
    }
    ctx->pool = reinterpret_cast<ngx_slab_pool_t*>(shm_zone->shm.addr);
    if (shm_zone->shm.exists) {
        ctx->sh = static_cast<ReplayShared*>(ctx->pool->data);
        return NGX_OK;
    }
    ctx->sh = static_cast<ReplayShared*>(ngx_slab_alloc(ctx->pool, sizeof(ReplayShared)));
    if (ctx->sh == nullptr) return NGX_ERROR;
    ctx->pool->data = ctx->sh;
    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel, rbtree_insert);
    ngx_queue_init(&ctx->sh->lru);
    ctx->pool->log_nomem = 0;   // a full zone is normal: we evict and retry
    static const char what[] = " in paygate idempotency zone \"";
    std::size_t len = sizeof(what) - 1 + shm_zone->shm.name.len + 2;
    ctx->pool->log_ctx = static_cast<u_char*>(ngx_slab_alloc(ctx->pool, len));
    if (ctx->pool->log_ctx == nullptr) return NGX_ERROR;
    ngx_sprintf(ctx->pool->log_ctx, "%s%V\"%Z", what, &shm_zone->shm.name);
    return NGX_OK;
}

ZoneCtx* ctx_of(const ReplayZone& zone) {
    return zone.shm != nullptr ? static_cast<ZoneCtx*>(zone.shm->data) : nullptr;
}

}  // namespace

char* configure_replay_zone(ngx_conf_t* cf, ngx_str_t* args, ngx_uint_t nargs, ReplayZone& zone) {
    if (zone.shm != nullptr) return const_cast<char*>("is duplicate");
    ngx_str_t spec = args[1];
    u_char* colon = static_cast<u_char*>(ngx_strlchr(spec.data, spec.data + spec.len, ':'));
    if (colon == nullptr || colon == spec.data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "paygate_idempotency_zone \"%V\": expected name:size", &spec);
        return static_cast<char*>(NGX_CONF_ERROR);
    }
    ngx_str_t name{static_cast<size_t>(colon - spec.data), spec.data};
    ngx_str_t size_text{static_cast<size_t>(spec.data + spec.len - colon - 1), colon + 1};
    ssize_t size = ngx_parse_size(&size_text);
    if (size == NGX_ERROR || size < static_cast<ssize_t>(8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "paygate_idempotency_zone \"%V\": size must be at least %uz",
                           &spec, 8 * ngx_pagesize);
        return static_cast<char*>(NGX_CONF_ERROR);
    }
    zone.ttl = 24 * 60 * 60;
    for (ngx_uint_t i = 2; i < nargs; ++i) {
        if (ngx_strncmp(args[i].data, "ttl=", 4) == 0) {
            ngx_str_t t{args[i].len - 4, args[i].data + 4};
            time_t ttl = ngx_parse_time(&t, 1);
            if (ttl == static_cast<time_t>(NGX_ERROR) || ttl <= 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "paygate_idempotency_zone: invalid \"%V\"", &args[i]);
                return static_cast<char*>(NGX_CONF_ERROR);
            }
            zone.ttl = ttl;
            continue;
        }
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "paygate_idempotency_zone: unknown parameter \"%V\"", &args[i]);
        return static_cast<char*>(NGX_CONF_ERROR);
    }
    auto* ctx = static_cast<ZoneCtx*>(ngx_pcalloc(cf->pool, sizeof(ZoneCtx)));
    if (ctx == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    zone.shm = ngx_shared_memory_add(cf, &name, static_cast<size_t>(size), &ngx_http_paygate_module);
    if (zone.shm == nullptr) return static_cast<char*>(NGX_CONF_ERROR);
    if (zone.shm->data != nullptr) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zone \"%V\" is already used", &name);
        return static_cast<char*>(NGX_CONF_ERROR);
    }
    zone.shm->init = init_zone;
    zone.shm->data = ctx;
    return NGX_CONF_OK;
}

ReplayLookup replay_lookup(const ReplayZone& zone, const idempotency::Key& key, StoredReply& out) {
    ZoneCtx* ctx = ctx_of(zone);
    u_char scope[kHashBytes];
    u_char request_hash[kHashBytes];
    if (ctx == nullptr || !unhex(key.scope, scope) || !unhex(key.request_hash, request_hash)) {
        return ReplayLookup::Miss;
    }
    // Nothing may allocate (or throw) while the zone is locked: the body is copied into room
    // reserved beforehand, and a larger body takes a second, sized pass.
    out.body.clear();
    out.body.reserve(1024);
    ReplayLookup result = ReplayLookup::Miss;
    std::uint32_t len = 0;
    bool copied = false;

    ngx_shmtx_lock(&ctx->pool->mutex);
    ReplayNode* rn = find_locked(ctx->sh, scope);
    if (rn != nullptr && rn->expires <= ngx_time()) {
        remove_locked(ctx, rn);
        rn = nullptr;
    }
    if (rn != nullptr) {
        ngx_queue_remove(&rn->lru);
        ngx_queue_insert_head(&ctx->sh->lru, &rn->lru);
        if (std::memcmp(rn->request_hash, request_hash, kHashBytes) != 0) {
            result = ReplayLookup::Conflict;
        } else {
            result = ReplayLookup::Hit;
            out.status = rn->status;
            len = rn->body_len;
            if (len <= out.body.capacity()) {
                out.body.assign(reinterpret_cast<const char*>(rn->body), len);
                copied = true;
            }
        }
    }
    ngx_shmtx_unlock(&ctx->pool->mutex);
    if (result != ReplayLookup::Hit || copied) return result;

    out.body.resize(len);
    ngx_shmtx_lock(&ctx->pool->mutex);
    rn = find_locked(ctx->sh, scope);
    copied = rn != nullptr && rn->body_len == len && rn->status == out.status &&
             std::memcmp(rn->request_hash, request_hash, kHashBytes) == 0;
    if (copied) std::memcpy(&out.body[0], rn->body, len);
    ngx_shmtx_unlock(&ctx->pool->mutex);
    return copied ? ReplayLookup::Hit : ReplayLookup::Miss;   // changed meanwhile: the daemon answers
}

void replay_store(const ReplayZone& zone, const idempotency::Key& key, std::uint16_t status, std::string_view body,
                  std::uint64_t sent_unix_ms, std::uint64_t record_expires_in_ms, ngx_log_t* log) {
    ZoneCtx* ctx = ctx_of(zone);
    u_char scope[kHashBytes];
    u_char request_hash[kHashBytes];
    if (ctx == nullptr || !unhex(key.scope, scope) || !unhex(key.request_hash, request_hash)) return;
    // A replayed record may have seconds left, not the zone's ttl: an entry must never answer
    // for a row PostgreSQL no longer replays (a retry after that executes anew).
    time_t now = ngx_time();
    auto expires = static_cast<time_t>(replay_policy::entry_expiry(now, zone.ttl, sent_unix_ms, record_expires_in_ms));
    if (expires == 0) return;
    std::size_t size = offsetof(ReplayNode, body) + body.size();
    if (!replay_policy::fits_zone(size, zone.shm->shm.size)) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "paygate: a %uz-byte reply is over an eighth of idempotency zone \"%V\": not cached",
                      body.size(), &zone.shm->shm.name);
        return;
    }

    ngx_shmtx_lock(&ctx->pool->mutex);
    if (ReplayNode* old = find_locked(ctx->sh, scope)) remove_locked(ctx, old);
    // Reclaim up to two expired entries on every store, so expired ones do not wait for eviction.
    for (int i = 0; i < 2 && evict_one_locked(ctx, true); ++i) {
    }
    auto* rn = replay_policy::allocate_evicting(
        [&] { return static_cast<ReplayNode*>(ngx_slab_alloc_locked(ctx->pool, size)); },
        [&] { return evict_one_locked(ctx, false); }, replay_policy::kMaxEvictions);
    if (rn != nullptr) {
        rn->node.key = tree_key(scope);
        std::memcpy(rn->scope, scope, kHashBytes);
        std::memcpy(rn->request_hash, request_hash, kHashBytes);
        rn->expires = expires;
        rn->status = status;
        rn->body_len = static_cast<std::uint32_t>(body.size());
        std::memcpy(rn->body, body.data(), body.size());
        ngx_rbtree_insert(&ctx->sh->rbtree, &rn->node);
        ngx_queue_insert_head(&ctx->sh->lru, &rn->lru);
    }
    ngx_shmtx_unlock(&ctx->pool->mutex);
    if (rn == nullptr) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "paygate: idempotency zone \"%V\" has no room for a %uz-byte reply after %d evictions",
                      &zone.shm->shm.name, body.size(), replay_policy::kMaxEvictions);
    }
}

}  // namespace paygate::module
