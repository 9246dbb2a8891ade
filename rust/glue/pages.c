// SPDX-License-Identifier: GPL-2.0
/*
 * kmcl C glue: the pages behind a GPADL (rust/shmem.rs, GpadlPages).
 *
 * A client describes memory as a kernel virtual buffer (vmalloc or the
 * linear map) or as a page array.  Like hv_vmbus's GPADLs, kmcl records
 * the pages without taking references (kmalloc and high-order pages
 * cannot be referenced page by page): the client keeps the memory until
 * DeleteGpadl returns, which waits until the server has unmapped it.
 */
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/string.h>
#include <linux/vmalloc.h>

#include "kmcl_glue.h"

/*
 * Looks up the @n pages under @buf (page aligned down).  Returns 0, or
 * -EINVAL if any page is neither vmalloc nor linear-map memory.
 */
int kmcl_pages_lookup(const void *buf, u32 n, struct page **pages)
{
	const u8 *p = (const u8 *)((unsigned long)buf & PAGE_MASK);
	u32 i;

	for (i = 0; i < n; i++, p += PAGE_SIZE) {
		struct page *page = NULL;

		if (is_vmalloc_addr(p))
			page = vmalloc_to_page(p);
		else if (virt_addr_valid(p))
			page = virt_to_page(p);
		if (!page)
			return -EINVAL;
		pages[i] = page;
	}
	return 0;
}

/* The page frame number of @page, as VMBus carries it (4 KiB pages). */
u64 kmcl_page_pfn(struct page *page)
{
	return page_to_pfn(page);
}

/*
 * The pages of the @n page frames in @pfns (memory a driver described by
 * PFN), or -EINVAL if one is not a valid page frame.
 */
int kmcl_pages_of_pfns(const u64 *pfns, u32 n, struct page **pages)
{
	u32 i;

	for (i = 0; i < n; i++) {
		if (!pfn_valid(pfns[i]))
			return -EINVAL;
		pages[i] = pfn_to_page(pfns[i]);
	}
	return 0;
}

/*
 * Copies @len bytes between a ring's data area and kmcl's own memory
 * (rust/shmem/ring_pages.rs): the kernel's memcpy, as hv_vmbus copies ring
 * payload.  The other endpoint may write the ring bytes meanwhile; the
 * caller copies them once into private memory and parses only that copy.
 */
void kmcl_ring_copy(void *dst, const void *src, size_t len)
{
	memcpy(dst, src, len);
}

/* Copies @len bytes at @offset of @page (within the page) to @dst. */
void kmcl_page_read(struct page *page, u32 offset, void *dst, u32 len)
{
	void *va = kmap_local_page(page);

	memcpy(dst, va + offset, len);
	kunmap_local(va);
}

/* Copies @len bytes from @src to @offset of @page (within the page). */
void kmcl_page_write(struct page *page, u32 offset, const void *src, u32 len)
{
	void *va = kmap_local_page(page);

	memcpy(va + offset, src, len);
	kunmap_local(va);
}
